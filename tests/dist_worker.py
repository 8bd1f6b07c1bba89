"""One rank of the equivalence test (tests/test_distributed.py), run by torchrun:

    torchrun --nproc-per-node 2 tests/dist_worker.py '{"model": "lenet5", ...}' OUT_DIR

trains as the JSON config says, through the same session and loop as
`torchrun -m svertka train`, then writes THIS rank's weights, as held in its own
memory, to OUT_DIR/rankR.safetensors (rank 0 alone writes the run's checkpoints,
so the other ranks' weights can be seen only this way)."""
import json
import sys
from pathlib import Path

from safetensors.numpy import save_file

from svertka.train import distributed, make_config, train

cfg = make_config(json.loads(sys.argv[1]))
with distributed.session(cfg) as job:
    train(cfg, progress=False)
    model = job.module.module  # the model inside DistributedDataParallel
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    save_file(state, str(Path(sys.argv[2]) / f"rank{job.rank}.safetensors"))
