"""The training loop: stage-wise SMHR training with checkpoints smhr_core loads.

Stage 1 trains without the photometric and mask losses, stage 2 with them
(`stage.photometric`, from `stage.photometric_start_epoch`). Adam with a step schedule, AMP on
CUDA only, optional gradient clipping, resume (model, optimizer, epoch, step; the data order
depends on the seed and the epoch only, so a resumed run draws what an uninterrupted one would),
an optional exponential moving average of the weights (`optim.ema_decay`; checkpoints then hold
the average), checkpoints every `checkpoint_every` epochs through
`smhr_core.checkpoint.save_checkpoint` with our metadata, tqdm progress bars and TensorBoard
scalars and image grids on rank 0. Under torchrun it runs DistributedDataParallel (see
`training.distributed`).
"""

from __future__ import annotations

import contextlib
import itertools
import random
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from smhr_core.backbones import backbone_blocks
from smhr_core.checkpoint import load_checkpoint, save_checkpoint
from smhr_core.config import ConfigError
from smhr_core.hand_model import HandModel
from smhr_core.network import SMHRNet
from smhr_core.open_hand import open_hand_directory
from training import sample as S
from training.config import OptimConfig, TrainingConfig, write_training_config
from training.distributed import (
    DistributedContext,
    all_reduce_mean,
    barrier,
    init_distributed,
    make_sampler,
    set_sampler_epoch,
    unwrap_model,
    wrap_model,
)
from training.head_addition import added_modules, with_added_modules
from training.head_widening import widen_head, widened_heads
from training.losses import TERMS, HandPredictions, LossBreakdown, SMHRLoss, gather_cells
from training.render import HandRenderer, albedo_from_texture

CHECKPOINT_PATTERN = "epoch_{epoch:04d}.pth"
LAST_CHECKPOINT = "last.pth"
LIVE_WEIGHTS = "live_weights"
CENTRE_HEADS = ("params", "texture", "light")
"""Heads the loss reads only at the labelled hand centres (`SMHRNet.forward` with `centres`)."""
"""Key of the live (not averaged) weights in the saved training state of an averaging run."""
_PREVIEW_LIGHT_BAND = 2
"""SH band of the camera-facing (z) direction, lit in previews of models without a light head."""


@dataclass(frozen=True)
class EpochSummary:
    """Mean losses of one epoch (over all processes)."""

    epoch: int
    steps: int
    photometric: bool
    lr: float
    seconds: float
    losses: dict[str, float]
    """`total` and every term of `LossBreakdown`, epoch means."""


@dataclass(frozen=True)
class TrainResult:
    output_dir: Path
    epochs: tuple[EpochSummary, ...]
    checkpoints: tuple[Path, ...]
    step: int
    """Optimizer steps taken in total (including resumed ones)."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def git_commit() -> str | None:
    """The commit of the code that trains, when it runs from a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def split_training_state(
    state: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, dict[str, torch.Tensor] | None]:
    """(optimizer state, live weights) from a checkpoint's saved training state; the live
    weights are None unless the run kept a weight average (`Trainer.training_state`)."""
    if state is not None and LIVE_WEIGHTS in state:
        return state["optimizer"], state[LIVE_WEIGHTS]
    return state, None


def parameter_groups(network: nn.Module, optim: OptimConfig) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: the trainable parameters of `optim.scaled_modules` with
    `lr_scale` `optim.module_lr_scale`, all others with 1.

    Raises:
        ConfigError: a name of `optim.scaled_modules` is not a top-level module of `network`.
    """
    children = dict(network.named_children())
    unknown = [name for name in optim.scaled_modules if name not in children]
    if unknown:
        raise ConfigError(
            f"optim.scaled_modules: {unknown} are not modules of this network (it has "
            f"{sorted(children)})"
        )
    scaled = {id(p) for name in optim.scaled_modules for p in children[name].parameters()}
    trainable = [p for p in network.parameters() if p.requires_grad]
    groups = [
        ([p for p in trainable if id(p) not in scaled], 1.0),
        ([p for p in trainable if id(p) in scaled], float(optim.module_lr_scale)),
    ]
    return [
        {"params": params, "lr": optim.lr * scale, "lr_scale": scale}
        for params, scale in groups
        if params
    ]


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class Trainer:
    """One training run.

    Args:
        config: the run's settings.
        dataset: training samples (training.sample contract); built from `config.data` by
            `dataset_factory` when None.
        dataset_factory: makes the dataset from the config (the CLI passes the data side's
            builder); required when `dataset` is None.
        ctx: process placement; read from the torchrun environment when None.
    """

    def __init__(
        self,
        config: TrainingConfig,
        dataset: Dataset | None = None,
        dataset_factory: Callable[[TrainingConfig], Dataset] | None = None,
        ctx: DistributedContext | None = None,
    ) -> None:
        self.config = config
        # Read once: a commit made while the run goes on is not the code that trained it.
        self.git_commit = git_commit()
        self.ctx = ctx or init_distributed(config.device, config.distributed)
        seed_everything(config.seed + self.ctx.rank)
        self.device = self.ctx.device
        self.output_dir = Path(config.output_dir)
        hand_dir = Path(config.data.hand_model) if config.data.hand_model else open_hand_directory()
        self.hand_model = HandModel.from_directory(hand_dir, device=self.device)
        self.resolution = config.model.input_resolution

        network = SMHRNet(config.model, pretrained_backbone=config.pretrained_backbone)
        self.epoch = 0
        self.step = 0
        optimizer_state = live_weights = None
        if config.resume:
            loaded = load_checkpoint(config.resume, map_location="cpu", config=config.model)
            # The averaged weights, if that run averaged; its live ones come back below.
            network.load_state_dict(loaded.model.state_dict())
            optimizer_state, live_weights = split_training_state(loaded.optimizer_state)
            self.epoch = int(loaded.report.epoch or 0)
            self.step = int(loaded.meta.get("step", 0))
        elif config.init_checkpoint:
            loaded = load_checkpoint(config.init_checkpoint, map_location="cpu")
            state = loaded.model.state_dict()
            new_modules = added_modules(loaded.config, config.model)
            widened = widened_heads(loaded.config, config.model)
            if widened:
                for name in widened:
                    width = config.model.head_hidden_channels(name)
                    state = widen_head(state, name, width, config.seed)
            elif new_modules:
                state = with_added_modules(state, network, new_modules)
            elif loaded.config != config.model:
                raise ConfigError(
                    f"init_checkpoint: {config.init_checkpoint} holds {loaded.config.to_dict()}, "
                    f"but model is {config.model.to_dict()} (only a wider "
                    "model.params_head_channels or model.keypoint_head_channels, added "
                    "model.heads or model.keypoint_skip, model.keypoint_context or "
                    "model.keypoint_refine or model.keypoint_refine_wide turned on may "
                    "differ)"
                )
            network.load_state_dict(state)
        network.to(self.device)
        self.memory_format = (
            torch.channels_last if config.channels_last else torch.contiguous_format
        )
        network.to(memory_format=self.memory_format)
        self.average: AveragedModel | None = None
        if config.optim.ema_decay > 0:
            self.average = AveragedModel(
                network,
                multi_avg_fn=get_ema_multi_avg_fn(config.optim.ema_decay),
                use_buffers=True,
            )
            # Nonzero on resume: the first update then blends into the restored average
            # instead of overwriting it.
            self.average.n_averaged.fill_(self.step)
        if live_weights is not None:
            network.load_state_dict(live_weights)
        if config.optim.freeze_backbone:
            network.backbone.requires_grad_(False)
            blocks = backbone_blocks(network.backbone)
            if config.optim.train_backbone_blocks > len(blocks):
                raise ValueError(
                    f"optim.train_backbone_blocks: {config.optim.train_backbone_blocks} exceeds "
                    f"the {len(blocks)} blocks of {config.model.backbone}"
                )
            for block in blocks[len(blocks) - config.optim.train_backbone_blocks :]:
                block.requires_grad_(True)
        self.model = wrap_model(network, self.ctx, config.distributed.sync_bn)
        self.optimizer = torch.optim.Adam(
            parameter_groups(network, config.optim),
            lr=config.optim.lr,
            weight_decay=config.optim.weight_decay,
        )
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)

        self.use_amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        needs_renderer = config.stage.photometric or config.log.images_every > 0
        self.renderer = (
            HandRenderer(
                self.resolution,
                torch.tensor(self.hand_model.faces(True)),
                torch.tensor(self.hand_model.faces(False)),
            ).to(self.device)
            if needs_renderer
            else None
        )
        self.loss = SMHRLoss(config.loss, self.hand_model, self.resolution, self.renderer).to(
            self.device
        )
        if dataset is None:
            if dataset_factory is None:
                raise ValueError("Trainer: give a dataset or a dataset_factory")
            dataset = dataset_factory(config)
        self.dataset = dataset
        self.sampler = make_sampler(dataset, self.ctx, shuffle=True, seed=config.seed)
        generator = torch.Generator().manual_seed(config.seed + self.ctx.rank)
        self.loader = DataLoader(
            dataset,
            batch_size=config.optim.batch_size,
            sampler=self.sampler,
            shuffle=False,
            num_workers=config.data.num_workers,
            drop_last=len(dataset) >= config.optim.batch_size * self.ctx.world_size,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_seed_worker,
            generator=generator,
            persistent_workers=config.data.num_workers > 0,
        )
        self.writer = None
        if self.ctx.is_main and config.log.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.output_dir / "tensorboard"))

    # -- one step -------------------------------------------------------------------------

    def set_train_mode(self) -> None:
        """Train mode; BatchNorm stays on running statistics with `optim.freeze_batchnorm`."""
        self.model.train()
        if self.config.optim.freeze_backbone:
            unwrap_model(self.model).backbone.eval()
        if self.config.optim.freeze_batchnorm:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.use_amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        moved = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        moved[S.IMAGE] = moved[S.IMAGE].contiguous(memory_format=self.memory_format)
        return moved

    def forward_loss(
        self, batch: dict[str, torch.Tensor], photometric: bool
    ) -> tuple[LossBreakdown, HandPredictions, dict[str, torch.Tensor]]:
        """Network forward and loss of one batch (already on the device)."""
        with self._autocast():
            # The loss reads these heads only at the labelled centres: evaluating them there
            # alone saves most of the params head's cost (256 hidden channels at every cell).
            outputs = self.model(batch[S.IMAGE], batch[S.IND], CENTRE_HEADS)
        outputs = {k: v.float() for k, v in outputs.items()}
        loss, pred = self.loss(outputs, batch, photometric=photometric)
        return loss, pred, outputs

    def train_step(
        self, batch: dict[str, torch.Tensor], photometric: bool
    ) -> tuple[LossBreakdown, HandPredictions, dict[str, torch.Tensor]]:
        """Forward, backward and one optimizer step; returns this rank's loss.

        A non-finite loss stops training with FloatingPointError naming the terms, except under
        AMP, where the gradient scaler skips that step (float16 overflow) and lowers its scale.
        """
        batch = self._to_device(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss, pred, outputs = self.forward_loss(batch, photometric)
        if not self.use_amp and not torch.isfinite(loss.total):
            bad = [t for t in TERMS if not torch.isfinite(getattr(loss, t))]
            raise FloatingPointError(
                f"step {self.step}: the loss is not finite (terms {bad}); lower optim.lr or set "
                "optim.grad_clip_norm"
            )
        self.scaler.scale(loss.total).backward()
        if self.config.optim.grad_clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.average is not None:
            self.average.update_parameters(unwrap_model(self.model))
        self.step += 1
        return loss, pred, outputs

    # -- epochs ---------------------------------------------------------------------------

    def _set_lr(self, epoch: int) -> float:
        lr = self.config.optim.lr_at(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        return lr

    def train_epoch(self, epoch: int) -> EpochSummary:
        cfg = self.config
        photometric = cfg.stage.photometric_at(epoch)
        lr = self._set_lr(epoch)
        set_sampler_epoch(self.sampler, epoch)
        self.set_train_mode()
        total_steps = len(self.loader)
        if cfg.optim.max_steps_per_epoch:
            total_steps = min(total_steps, cfg.optim.max_steps_per_epoch)
        sums = torch.zeros(len(TERMS) + 1, dtype=torch.float64)
        steps = skipped = 0
        start = time.monotonic()
        bar = tqdm(
            total=total_steps,
            desc=f"epoch {epoch + 1}/{cfg.optim.epochs}"
            + (" (photometric)" if photometric else ""),
            disable=not (self.ctx.is_main and cfg.log.progress),
            dynamic_ncols=True,
            leave=False,
        )
        # islice: a loop that breaks at the step limit would first fetch (render) one more batch.
        for batch in itertools.islice(self.loader, total_steps):
            loss, pred, outputs = self.train_step(batch, photometric)
            values = torch.stack([loss.total.detach()] + [getattr(loss, t).detach() for t in TERMS])
            values = all_reduce_mean(values, self.ctx).double().cpu()
            steps += 1
            bar.update(1)
            if not torch.isfinite(values).all():
                skipped += 1  # AMP overflow: the scaler skipped this step
                continue
            sums += values
            bar.set_postfix(loss=f"{float(values[0]):.4g}")
            if self.writer is not None:
                if self.step % cfg.log.scalars_every == 0:
                    self.writer.add_scalar("loss/total", float(values[0]), self.step)
                    for name, value in zip(TERMS, values[1:].tolist(), strict=True):
                        self.writer.add_scalar(f"loss/{name}", value, self.step)
                    self.writer.add_scalar("lr", lr, self.step)
                if cfg.log.images_every and self.step % cfg.log.images_every == 0:
                    self.writer.add_image(
                        "hands", self.preview(batch, pred, outputs), self.step, dataformats="CHW"
                    )
        bar.close()
        if steps == 0:
            raise RuntimeError(
                f"epoch {epoch}: the data loader gave no batch (dataset of {len(self.dataset)} "
                f"samples, batch size {cfg.optim.batch_size}, {self.ctx.world_size} process(es))"
            )
        means = (sums / max(1, steps - skipped)).tolist()
        losses = {"total": means[0], **dict(zip(TERMS, means[1:], strict=True))}
        summary = EpochSummary(
            epoch=epoch,
            steps=steps,
            photometric=photometric,
            lr=lr,
            seconds=time.monotonic() - start,
            losses=losses,
        )
        if self.writer is not None:
            self.writer.add_scalar("epoch/loss_total", losses["total"], epoch + 1)
            self.writer.flush()
        return summary

    def fit(self) -> TrainResult:
        """Train from `self.epoch` to `optim.epochs`, saving checkpoints; rank 0 writes files."""
        cfg = self.config
        if self.ctx.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            write_training_config(cfg, self.output_dir / "config.yaml")
        history: list[EpochSummary] = []
        checkpoints: list[Path] = []
        try:
            for epoch in range(self.epoch, cfg.optim.epochs):
                summary = self.train_epoch(epoch)
                history.append(summary)
                self.epoch = epoch + 1
                if self.ctx.is_main:
                    terms = ", ".join(
                        f"{k} {v:.4g}" for k, v in summary.losses.items() if v or k == "total"
                    )
                    tqdm.write(
                        f"epoch {self.epoch}/{cfg.optim.epochs}: {terms} "
                        f"({summary.steps} steps, {summary.seconds:.1f} s, lr {summary.lr:.3g})"
                    )
                last = self.epoch == cfg.optim.epochs
                if self.epoch % cfg.checkpoint_every == 0 or last:
                    if cfg.optim.bn_recalibration_batches and not cfg.optim.freeze_batchnorm:
                        self.recalibrate_batchnorm(cfg.optim.bn_recalibration_batches)
                    path = self.save_checkpoint()
                    if path is not None:
                        checkpoints.append(path)
        finally:
            if self.writer is not None:
                self.writer.close()
        return TrainResult(
            output_dir=self.output_dir,
            epochs=tuple(history),
            checkpoints=tuple(checkpoints),
            step=self.step,
        )

    # -- checkpoints and previews -----------------------------------------------------------

    def saved_network(self) -> SMHRNet:
        """The network that checkpoints hold: the weight average if the run keeps one."""
        if self.average is not None:
            return self.average.module
        return unwrap_model(self.model)

    def recalibrate_batchnorm(self, batches: int) -> None:
        """Set every BatchNorm's running statistics of the saved network to the plain average
        over `batches` training batches (`torch.optim.swa_utils.update_bn`); training itself uses
        batch statistics, so only evaluation-mode outputs change."""
        network = self.saved_network()
        # A frozen backbone ran on its own (pretrained) statistics throughout training, and the
        # neck learned from those features: they must survive the re-estimation.
        kept = (
            {k: v.clone() for k, v in network.backbone.state_dict().items()}
            if self.config.optim.freeze_backbone
            else None
        )
        images = (
            b[S.IMAGE].to(self.device).contiguous(memory_format=self.memory_format)
            for b in itertools.islice(self.loader, batches)
        )
        update_bn(images, network)
        if kept is not None:
            network.backbone.load_state_dict(kept)

    def checkpoint_meta(self) -> dict[str, Any]:
        """What our checkpoints record besides the weights and the model config."""
        return {
            "backbone": self.config.model.backbone,
            "hand_model_id": self.hand_model.model_id,
            "training": self.config.to_dict(),
            "git_commit": self.git_commit,
            "step": self.step,
            "world_size": self.ctx.world_size,
        }

    def training_state(self) -> dict[str, Any]:
        """What a resumed run needs besides the saved network: the optimizer state, and with a
        weight average also the live weights (the saved network is then the average)."""
        if self.average is None:
            return self.optimizer.state_dict()
        live = {k: v.detach().cpu() for k, v in unwrap_model(self.model).state_dict().items()}
        return {"optimizer": self.optimizer.state_dict(), LIVE_WEIGHTS: live}

    def save_checkpoint(self) -> Path | None:
        """Write `epoch_NNNN.pth` and `last.pth` (rank 0); every rank waits for it."""
        path = None
        if self.ctx.is_main:
            network = self.saved_network()
            meta = self.checkpoint_meta()
            path = self.output_dir / CHECKPOINT_PATTERN.format(epoch=self.epoch)
            for target in (path, self.output_dir / LAST_CHECKPOINT):
                save_checkpoint(
                    target,
                    network,
                    self.config.model,
                    self.epoch,
                    meta=meta,
                    optimizer_state=self.training_state(),
                )
        barrier(self.ctx)
        return path

    @torch.no_grad()
    def preview(
        self,
        batch: dict[str, torch.Tensor],
        pred: HandPredictions,
        outputs: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """(3, H, W) grid: inputs on top, the decoded hands rendered over them below."""
        if self.renderer is None:
            raise RuntimeError("previews need the renderer (log.images_every > 0)")
        n = min(self.config.log.images_max, pred.vertices.shape[0])
        vertices = pred.vertices[:n].detach()
        b, m = vertices.shape[:2]
        flat = vertices.reshape(b * m, -1, 3)
        ind = batch[S.IND][:n].to(self.device)
        if "texture" in outputs and "light" in outputs:
            texture = gather_cells(outputs["texture"][:n].detach(), ind).reshape(b * m, -1)
            light = gather_cells(outputs["light"][:n].detach(), ind).reshape(b * m, -1)
        else:
            texture = flat.new_zeros(b * m, flat.shape[1] * 3)
            light = flat.new_zeros(b * m, 27)
            # Camera-facing normals have n_z < 0: a negative z band lights them.
            light[:, _PREVIEW_LIGHT_BAND::9] = -0.4
        colours = self.renderer.shade(flat, albedo_from_texture(texture), light)
        render = self.renderer(
            vertices,
            pred.is_right[:n],
            valid=pred.valid[:n],
            colours=colours.reshape(vertices.shape).clamp(0, 1),
            silhouette=False,
        )
        image = batch[S.IMAGE_RGB][:n].to(self.device).float()
        alpha = 0.75 * render.mask
        overlay = image * (1 - alpha) + render.image.clamp(0, 1) * alpha
        top = torch.cat(list(image), dim=2)
        bottom = torch.cat(list(overlay), dim=2)
        return torch.cat([top, bottom], dim=1).clamp(0, 1).cpu()
