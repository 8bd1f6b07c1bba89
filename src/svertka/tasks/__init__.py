"""Tasks beyond classification: box geometry, NMS, and the scores of the point,
localisation and detection tasks (COCO box AP written here, checked against
pycocotools in the tests). The classical detection baseline (connected
components) is in :mod:`svertka.tasks.baseline`, which uses the canvas resampler
of :mod:`svertka.data.canvas` and is therefore not imported here (data.canvas
imports the box geometry). Heads and losses join when the training loop serves tasks.
"""

from svertka.tasks.boxes import (
                                 box_area,
                                 box_iou,
                                 cxcywh_to_xyxy,
                                 generalized_box_iou,
                                 giou,
                                 iou,
                                 xywh_to_xyxy,
                                 xyxy_to_cxcywh,
                                 xyxy_to_xywh,
)
from svertka.tasks.coco_eval import (
                                 DetectionMetrics,
                                 evaluate_coco_files,
                                 evaluate_detections,
)
from svertka.tasks.metrics import (
                                 keypoint_errors,
                                 keypoint_metrics,
                                 localization_metrics,
)
from svertka.tasks.nms import batched_nms, nms

__all__ = ["box_area", "box_iou", "cxcywh_to_xyxy", "generalized_box_iou", "giou", "iou",
           "xywh_to_xyxy", "xyxy_to_cxcywh", "xyxy_to_xywh", "DetectionMetrics", "evaluate_coco_files",
           "evaluate_detections", "keypoint_errors", "keypoint_metrics", "localization_metrics",
           "batched_nms", "nms"]
