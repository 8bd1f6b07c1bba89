"""Tasks beyond classification: box geometry, NMS, targets and metrics
(COCO detection AP, keypoint and localisation scores) and the classical
detection baseline. Heads and losses join them when the training loop serves tasks."""

from svertka.tasks.boxes import (box_area, box_iou, cxcywh_to_xyxy, generalized_box_iou, giou, iou,
                                 xywh_to_xyxy, xyxy_to_cxcywh, xyxy_to_xywh)

__all__ = ["box_area", "box_iou", "cxcywh_to_xyxy", "generalized_box_iou", "giou", "iou",
           "xywh_to_xyxy", "xyxy_to_cxcywh", "xyxy_to_xywh"]
