"""One training step of a tiny model on fixed synthetic scenes; run alone or under torchrun.

Usage: python ddp_worker.py OUT_DIR BATCH_SIZE
Writes OUT_DIR/rank{RANK}.pt with the first step's loss (mean over all processes) and the
network's parameters before and after the step, and the gradients it took. Used by test_ddp.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from training.config import load_training_config
from training.data_source import build_dataset
from training.distributed import all_reduce_mean, cleanup, unwrap_model
from training.trainer import Trainer

SETTINGS = [
    "model.backbone=resnet18",
    "model.input_resolution=64",
    "model.heads=[hm, params]",
    "data.synthetic_count=4",
    "data.max_hands=2",
    "data.num_workers=0",
    # BatchNorm on running statistics: a batch split over processes then normalises exactly
    # like the whole batch (SyncBatchNorm is CUDA-only).
    "optim.freeze_batchnorm=true",
    "optim.lr=1e-3",
    "device=cpu",
    "log.tensorboard=false",
    "log.progress=false",
    "log.images_every=0",
]


def main() -> None:
    out_dir, batch_size = Path(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(1)
    config = load_training_config(
        None, [*SETTINGS, f"optim.batch_size={batch_size}", f"output_dir={out_dir}"]
    )
    dataset = build_dataset(config.data, config.model.input_resolution)
    trainer = Trainer(config, dataset=dataset)
    try:
        network = unwrap_model(trainer.model)
        initial = {k: v.detach().clone() for k, v in network.state_dict().items()}
        batch = next(iter(trainer.loader))
        trainer.set_train_mode()
        loss, _, _ = trainer.train_step(batch, photometric=False)
        mean_loss = all_reduce_mean(loss.total.detach(), trainer.ctx)
        params = {k: v.detach().clone() for k, v in network.state_dict().items()}
        grads = {k: p.grad.detach().clone() for k, p in network.named_parameters()}
        torch.save(
            {
                "loss": mean_loss,
                "initial": initial,
                "params": params,
                "grads": grads,
                "world_size": trainer.ctx.world_size,
            },
            out_dir / f"rank{trainer.ctx.rank}.pt",
        )
    finally:
        cleanup(trainer.ctx)


if __name__ == "__main__":
    main()
