"""Mixing sources by ratio: realised ratios, disjoint and deterministic ranks, worker-count independence, epochs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from evf_lightning.commands.data_show import realised_shares
from evf_lightning.data.datamodule import EvfDataModule
from evf_lightning.data.mixture import MixtureSampler
from evf_lightning.data.sampler import Draw, EpochDrawSampler
from evf_lightning.data.sources import Source

# Three sources over the generated refer folders, of 96, 24 and 8 images, weighted 5 : 3 : 2.
SOURCES = [
    Source(dataset="refcoco", split_by="unc", split="train", ratio=5),
    Source(dataset="refcoco", split_by="unc", split="val", ratio=3),
    Source(dataset="refcoco", split_by="unc", split="testA", ratio=2),
]


def datamodule(root: Path, train: list[Source] = SOURCES, **kwargs) -> EvfDataModule:
    settings = {"sam_image_size": 64, "beit_image_size": 32, "batch_size": 4, "num_workers": 0} | kwargs
    return EvfDataModule(root=str(root), tokenizer=str(root / "tokenizer"), train=train, **settings)


def draws(sampler: MixtureSampler, epoch: int = 0) -> list[Draw]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_ratios_are_realised_within_two_points_over_ten_thousand_draws(synth_root):
    module = datamodule(synth_root, samples_per_epoch=10_000)
    sizes = [len(reader) for reader in module.readers(module.train_splits)]
    assert sizes == [96, 24, 8]
    sampler = module.train_sampler(sizes)
    assert isinstance(sampler, MixtureSampler) and len(sampler) == 10_000
    drawn = draws(sampler)
    shares = realised_shares(drawn, sizes)
    np.testing.assert_allclose(shares, [0.5, 0.3, 0.2], atol=0.02)
    # within a source every image is drawn: uniform over its images, not stuck on a few
    offsets = np.cumsum([0, *sizes])
    for source, size in enumerate(sizes):
        images = {d.index - offsets[source] for d in drawn if offsets[source] <= d.index < offsets[source + 1]}
        assert images == set(range(size))


def test_two_ranks_draw_disjoint_deterministic_samples_which_are_the_single_process_draws():
    single = draws(MixtureSampler([96, 24, 8], [5, 3, 2], 1001, seed=7))
    ranks = [draws(MixtureSampler([96, 24, 8], [5, 3, 2], 1001, seed=7, num_replicas=2, rank=r)) for r in (0, 1)]
    assert [len(r) for r in ranks] == [501, 501]  # equal steps on every rank; the last draw runs past 1001
    numbers = [{d.draw for d in r} for r in ranks]
    assert not numbers[0] & numbers[1]
    assert numbers[0] | numbers[1] == set(range(1002))
    assert ranks[0] == single[0::2] and ranks[1][:500] == single[1::2]
    again = draws(MixtureSampler([96, 24, 8], [5, 3, 2], 1001, seed=7, num_replicas=2, rank=1))
    assert again == ranks[1]
    other_seed = draws(MixtureSampler([96, 24, 8], [5, 3, 2], 1001, seed=8))
    assert [d.index for d in other_seed] != [d.index for d in single]


def test_the_epoch_changes_the_draws_and_each_epoch_comes_back(synth_root):
    sampler = MixtureSampler([96, 24, 8], [5, 3, 2], 500, seed=0)
    first, second = draws(sampler, 0), draws(sampler, 1)
    assert all(d.epoch == 0 for d in first) and all(d.epoch == 1 for d in second)
    assert sum(a.index == b.index for a, b in zip(first, second, strict=True)) < 100
    assert draws(sampler, 0) == first  # resuming epoch 0 redraws it exactly
    assert sampler.draw(123, epoch=1) == second[123]  # any draw recomputed on its own


def test_an_image_drawn_twice_in_an_epoch_gets_prompts_by_draw(synth_root):
    module = datamodule(synth_root, expressions_per_image=1)
    module.setup("fit")
    dataset = module.train_set
    index = max(range(len(dataset)), key=lambda i: dataset.locate(i)[0].num_expressions(dataset.locate(i)[1]))
    assert dataset.locate(index)[0].num_expressions(dataset.locate(index)[1]) >= 4
    chosen = {tuple(dataset.chosen_expressions(Draw(index, 0, n))) for n in range(40)}
    assert len(chosen) >= 3
    assert dataset.chosen_expressions(Draw(index, 0, 5)) == dataset.chosen_expressions(Draw(index, 0, 5))


def batches(module: EvfDataModule, count: int) -> list[tuple[list[str], list[str], list[torch.Tensor]]]:
    out = []
    for batch, _ in zip(module.train_dataloader(), range(count), strict=False):
        out.append((batch.sources, batch.texts, batch.masks))
    return out


def test_the_same_seed_reads_the_same_samples_whatever_the_worker_count(synth_root):
    read = {}
    for workers in (0, 2):
        module = datamodule(synth_root, samples_per_epoch=24, num_workers=workers)
        module.setup("fit")
        read[workers] = batches(module, 6)
    assert len(read[0]) == 6
    for (sources, texts, masks), (sources2, texts2, masks2) in zip(read[0], read[2], strict=True):
        assert sources == sources2 and texts == texts2
        assert all(torch.equal(a, b) for a, b in zip(masks, masks2, strict=True))
    seen = {source.split(" image")[0] for sources, _, _ in read[0] for source in sources}
    assert seen == {"refcoco/unc/train", "refcoco/unc/val", "refcoco/unc/testA"}


def _rank_worker(rank: int, world: int, store: str, root: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        module = datamodule(Path(root), samples_per_epoch=30)
        module.setup("fit")
        loader = module.train_dataloader()
        record = {"draws": list(loader.sampler), "batches": batches(module, 2)}
        torch.save(record, f"{out_dir}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_read_disjoint_shares_of_the_mixture(synth_root, tmp_path):
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    args = (2, str(tmp_path / "store"), str(synth_root), str(tmp_path))
    mp.start_processes(_rank_worker, args=args, nprocs=2, join=True, start_method=method)
    ranks = [torch.load(tmp_path / f"{rank}.pt", weights_only=False) for rank in range(2)]
    assert [len(r["draws"]) for r in ranks] == [15, 15]  # the world size came from the process group
    assert {d.draw for d in ranks[0]["draws"]} == set(range(0, 30, 2))
    assert {d.draw for d in ranks[1]["draws"]} == set(range(1, 30, 2))
    module = datamodule(synth_root, samples_per_epoch=30)
    sizes = [len(reader) for reader in module.readers(module.train_splits)]
    single = draws(module.train_sampler(sizes))
    assert ranks[0]["draws"] == single[0::2] and ranks[1]["draws"] == single[1::2]
    module.setup("fit")
    for rank, record in enumerate(ranks):  # what each process read is what those draws read here
        items = [module.train_set[draw] for draw in single[rank::2][:8]]
        texts = [text for item in items for text in item.texts]
        assert [t for _, batch_texts, _ in record["batches"] for t in batch_texts] == texts


def test_one_source_without_ratio_keeps_the_seeded_shuffle_and_more_make_a_mixture(synth_root):
    one = datamodule(synth_root, train=[Source()])
    assert not one.mixes
    assert isinstance(one.train_sampler([96]), EpochDrawSampler)
    assert datamodule(synth_root, train=[Source(ratio=2)]).mixes
    assert datamodule(synth_root, train=[Source()], samples_per_epoch=50).mixes
    two = datamodule(synth_root, train=[Source(), Source(split="val")])
    sampler = two.train_sampler([96, 24])
    assert isinstance(sampler, MixtureSampler)
    assert len(sampler) == 120  # an epoch defaults to as many draws as train images
    np.testing.assert_allclose(sampler.probabilities, [0.5, 0.5])  # unset ratios count as 1


def test_the_trainer_world_is_the_mixture_world(synth_root):
    from lightning import Trainer

    module = datamodule(synth_root, samples_per_epoch=10)
    module.trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    module.setup("fit")
    sampler = module.train_dataloader().sampler
    assert (sampler.num_replicas, sampler.rank, len(sampler)) == (1, 0, 10)


def test_a_config_mixes_prepared_and_raw_sources(synth_root, tmp_path):
    from evf_lightning.data.prepared import PreparedReader, prepare

    val = Source(dataset="refcoco", split_by="unc", split="val")
    prepare(val.raw_reader(synth_root), synth_root, tmp_path / "val", kind="refer", arguments=val.arguments)
    train = [Source(ratio=1), Source(dataset="refcoco", split="val", ratio=1, prepared=str(tmp_path / "val"))]
    module = datamodule(synth_root, train=train, samples_per_epoch=16)
    module.setup("fit")
    assert isinstance(module.train_set.readers[1], PreparedReader)
    read = batches(module, 4)
    assert sum(len(sources) for sources, _, _ in read) == 16
    assert {s.split(" image")[0] for sources, _, _ in read for s in sources} == {"refcoco/unc/train", "refcoco/unc/val"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"kind": "objects365", "split": "train"}, "objects365 source has no split .* takes no reader arguments"),
        ({"kind": "ade20k", "dataset": "refcoco"}, r"ade20k source has no dataset .* takes only \['split'\]"),
        ({"ratio": 0}, "ratio must be a positive number"),
        ({"ratio": float("nan")}, "ratio must be a positive number"),
        ({"kind": "coco"}, "unknown source kind 'coco'"),
    ],
)
def test_a_source_that_cannot_be_read_is_refused_with_its_reason(arguments, message):
    with pytest.raises(ValueError, match=message):
        Source(**arguments)


def test_sources_take_their_readers_defaults_and_names():
    assert Source() == Source(kind="refer", dataset="refcoco", split_by="unc", split="train")
    assert Source(dataset="refcocog", split_by="umd", split="val").name == "refcocog_umd_val"
    assert Source(kind="ade20k").name == "ade20k_training"
    assert Source(kind="grefcoco").name == "grefcoco_unc_train"
    assert Source(kind="objects365").name == "objects365"
    assert Source(kind="part_imagenet").arguments == {"split": "train"}


def test_evaluation_sources_take_no_ratio(synth_root):
    with pytest.raises(ValueError, match="evaluation source refcoco_unc_val has a ratio"):
        EvfDataModule(root=str(synth_root), tokenizer="t", val=[Source(split="val", ratio=2)])
