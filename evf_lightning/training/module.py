"""The one LightningModule for every EVF variant: what is trained, how it is scored."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from lightning import LightningModule
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from evf_lightning.data.batch import ReferBatch
from evf_lightning.data.tokenizer import check_fits_vocabulary
from evf_lightning.data.transforms import upscale_batch_logits
from evf_lightning.hub.pretrained import PretrainedWeights, load_pretrained
from evf_lightning.models.evf import EvfModel, EvfModelConfig
from evf_lightning.training.embedding_cache import check_cache_matches, features_from_cache
from evf_lightning.training.losses import LossConfig, evf_loss
from evf_lightning.training.metrics import ReferringSegmentationMetrics
from evf_lightning.training.trainable import TrainableParts, apply_trainable, check_frozen


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with linear warmup then linear decay to zero, per optimizer step.

    The paper states AdamW, lr 1e-4, linear decay; betas, weight decay and warmup are LISA's, which the
    authors say their trainer grew from (reference/evf-sam-recipe.md §3). `fused` is torch's AdamW option:
    None keeps torch's default (one kernel per list of tensors on a GPU, a Python loop over the parameters
    on a CPU); True updates every parameter in one fused kernel, which on a CPU takes a fifth of the time
    for a model of many small tensors.
    """

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    warmup_steps: int = 100
    fused: bool | None = None


def warmup_then_linear_decay(warmup_steps: int, total_steps: int):
    """LR multiplier: 0 -> 1 over `warmup_steps`, then 1 -> 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


class EvfLitModule(LightningModule):
    """Every EVF variant's training and evaluation.

    `compile_encoders` wraps the two heavy encoders (image and prompt) in `torch.compile` in place, so the state
    dict keeps its names; with an embedding cache only the prompt encoder's compiled form ever runs.
    """

    def __init__(
        self,
        model: EvfModelConfig,
        trainable: TrainableParts = TrainableParts(),
        loss: LossConfig = LossConfig(),
        optimizer: OptimizerConfig = OptimizerConfig(),
        init: PretrainedWeights = PretrainedWeights(),
        compile_encoders: bool = False,
    ) -> None:
        super().__init__()
        self.config = model
        self.trainable = trainable
        self.loss_config = loss
        self.optimizer_config = optimizer
        self.model = EvfModel(model)
        load_pretrained(self.model, init)
        apply_trainable(self.model, trainable)
        if compile_encoders:
            self.model.image_backbone.image_encoder.compile()
            self.model.prompt_encoder.compile()
        self.val_metrics = nn.ModuleList()
        self.test_metrics = nn.ModuleList()

    # ----- shared forward -------------------------------------------------------------------------
    def forward(self, batch: ReferBatch) -> Tensor:
        """Low-resolution logits [N, h, w] for every expression of the batch, from cached image features where
        the batch carries them, else encoding its images (without autograd when the encoder is frozen)."""
        if batch.cached_features is not None:
            features = features_from_cache(batch.cached_features).to(self.dtype)
        else:
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.trainable.image_encoder):
                features = self.model.encode_image(batch.sam_pixels)
        return self.model(None, batch.beit_pixels, batch.input_ids, batch.attention_mask, batch.image_index, features)

    def full_resolution_logits(self, batch: ReferBatch, low_res: Tensor) -> list[Tensor]:
        """Per image, its expressions' logits at the image's original size [n_i, H_i, W_i]."""
        backbone = self.config.image_backbone
        original = [tuple(masks.shape[-2:]) for masks in batch.masks]
        return upscale_batch_logits(
            low_res, batch.image_index, batch.resized_hw, original, backbone.image_size, backbone.resize
        )

    # ----- steps ----------------------------------------------------------------------------------
    def training_step(self, batch: ReferBatch, batch_idx: int) -> Tensor:
        logits = self.full_resolution_logits(batch, self(batch))
        loss = evf_loss(logits, [m.float() for m in batch.masks], self.loss_config)
        size = batch.num_expressions
        self.log("train/loss", loss.total, prog_bar=True, batch_size=size)
        self.log("train/bce", loss.bce, batch_size=size)
        self.log("train/dice", loss.dice, batch_size=size)
        if batch.num_skipped:
            self.log("train/skipped_samples", float(batch.num_skipped), reduce_fx="sum", batch_size=size)
        return loss.total

    def _evaluate(self, batch: ReferBatch, metrics: ReferringSegmentationMetrics, prefix: str) -> None:
        logits = self.full_resolution_logits(batch, self(batch))
        loss = evf_loss(logits, [m.float() for m in batch.masks], self.loss_config)
        # sync_dist: under DDP the logged loss is the mean over every rank's batches, not rank 0's alone
        self.log(
            f"{prefix}/loss", loss.total, batch_size=batch.num_expressions, add_dataloader_idx=False, sync_dist=True
        )
        metrics.update([p for image in logits for p in image > 0], [m.bool() for image in batch.masks for m in image])

    def validation_step(self, batch: ReferBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, self.val_metrics[dataloader_idx], f"val/{self._val_names[dataloader_idx]}")

    def test_step(self, batch: ReferBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, self.test_metrics[dataloader_idx], f"test/{self._test_names[dataloader_idx]}")

    def predict_step(self, batch: ReferBatch, batch_idx: int, dataloader_idx: int = 0) -> list[Tensor]:
        return [image > 0 for image in self.full_resolution_logits(batch, self(batch))]

    # ----- metrics per evaluation split -----------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        tokenizer = getattr(datamodule, "tokenizer", None)
        if tokenizer is not None:
            check_fits_vocabulary(
                tokenizer,
                self.config.prompt_encoder.vocab_size,
                str(datamodule.tokenizer_dir),
                "the prompt encoder (model.model.prompt_encoder vocab_size; raise it or use the matching tokenizer)",
            )
        cache = getattr(datamodule, "embedding_cache", None)
        if cache is not None:
            check_cache_matches(cache, self.model.image_backbone, datamodule.sam_preprocess)
        self._val_names = list(getattr(datamodule, "val_names", [])) or ["val"]
        self._test_names = list(getattr(datamodule, "test_names", [])) or ["test"]
        self.val_metrics = nn.ModuleList(ReferringSegmentationMetrics() for _ in self._val_names)
        self.test_metrics = nn.ModuleList(ReferringSegmentationMetrics() for _ in self._test_names)

    def _log_metrics(self, metrics: nn.ModuleList, names: list[str], prefix: str) -> None:
        for index, (name, metric) in enumerate(zip(names, metrics, strict=True)):
            values = metric.compute()
            for key, value in values.items():
                self.log(f"{prefix}/{name}/{key}", value, sync_dist=False)
                if index == 0:
                    self.log(f"{prefix}/{key}", value, sync_dist=False)
            metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics, self._val_names, "val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics, self._test_names, "test")

    # ----- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self):
        # Frozen parameters get no optimizer state (and, having requires_grad False, no gradient and no
        # all-reduce under DDP): first make sure they are the ones the recipe freezes.
        check_frozen(self.model, self.trainable)
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"trainable={asdict(self.trainable)} leaves no parameter to train")
        cfg = self.optimizer_config
        optimizer = torch.optim.AdamW(
            params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=cfg.fused
        )
        total = int(self.trainer.estimated_stepping_batches)
        schedule = LambdaLR(optimizer, warmup_then_linear_decay(min(cfg.warmup_steps, total), total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
