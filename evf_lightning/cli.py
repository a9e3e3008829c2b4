"""The `evf` command: one verb table over Lightning's fit/validate/test/predict and our own verbs.

Lightning verbs are LightningCLI (omegaconf mode: `--config`, dotted overrides, `--print_config`).
Our verbs are typed functions whose docstrings are their `--help`. Verbs that need no model (such as
`evf data synth`) do not import Lightning, so they start in a second.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

LIGHTNING_VERBS = {
    "fit": "train a model (LightningCLI)",
    "validate": "evaluate on the validation splits (LightningCLI)",
    "test": "evaluate on the test splits (LightningCLI)",
    "predict": "predict masks for a data split (LightningCLI)",
}


def _synth() -> Callable:
    from evf_lightning.data.synth_cli import synth

    return synth


def _data_prepare() -> Callable:
    from evf_lightning.commands.data_prepare import prepare

    return prepare


def _data_show() -> Callable:
    from evf_lightning.commands.data_show import show

    return show


def _objects365_masks() -> Callable:
    from evf_lightning.commands.objects365_masks import objects365_masks

    return objects365_masks


def _grounding() -> Callable:
    from evf_lightning.commands.grounding import grounding

    return grounding


def _import() -> Callable:
    from evf_lightning.commands.import_export import import_official

    return import_official


def _export() -> Callable:
    from evf_lightning.commands.import_export import export_official

    return export_official


def _predict_video() -> Callable:
    from evf_lightning.commands.predict_video import predict_video

    return predict_video


def _predict_image() -> Callable:
    from evf_lightning.commands.predict_image import predict_image

    return predict_image


def _demo() -> Callable:
    from evf_lightning.commands.demo import demo

    return demo


def _publish() -> Callable:
    from evf_lightning.commands.publish import publish

    return publish


def _sweep() -> Callable:
    from evf_lightning.commands.sweep import sweep

    return sweep


def _compare() -> Callable:
    from evf_lightning.commands.compare import compare

    return compare


def _cache_build() -> Callable:
    from evf_lightning.commands.cache_build import build

    return build


# verb -> (sub-verb -> loader of the typed function that implements it)
OUR_VERBS: dict[str, dict[str, Callable[[], Callable]] | Callable[[], Callable]] = {
    "data": {"synth": _synth, "prepare": _data_prepare, "show": _data_show, "objects365-masks": _objects365_masks},
    "grounding": _grounding,
    "import": _import,
    "export": _export,
    "predict-image": _predict_image,
    "predict-video": _predict_video,
    "demo": _demo,
    "publish": _publish,
    "sweep": _sweep,
    "compare": _compare,
    "cache": {"build": _cache_build},
}


def _usage() -> str:
    lines = ["usage: evf VERB [options]   (evf VERB --help for a verb's options)", ""]
    lines += [f"  {verb:<21} {text}" for verb, text in LIGHTNING_VERBS.items()]
    for verb, entry in OUR_VERBS.items():
        subs = entry.keys() if isinstance(entry, dict) else [None]
        for sub in subs:
            loader = entry[sub] if isinstance(entry, dict) else entry
            doc = (loader().__doc__ or "").strip().splitlines()[0]
            lines.append(f"  {verb + (' ' + sub if sub else ''):<21} {doc}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from_command_line = argv is None
    argv = sys.argv[1:] if argv is None else argv
    # Offline by design: nothing reaches a hub at run time unless a verb is asked to publish.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return
    verb, rest = argv[0], argv[1:]
    if verb in LIGHTNING_VERBS:
        from evf_lightning.training.lightning_cli import EvfCLI

        # From the shell LightningCLI reads sys.argv itself (given both, it warns on every run).
        EvfCLI(args=None if from_command_line else argv)
        return
    if verb not in OUR_VERBS:
        raise SystemExit(f"evf: unknown verb {verb!r}\n\n{_usage()}")
    from jsonargparse import auto_cli

    entry = OUR_VERBS[verb]
    if isinstance(entry, dict):
        auto_cli({name: loader() for name, loader in entry.items()}, args=rest, as_positional=True)
    else:
        auto_cli(entry(), args=rest, as_positional=True)


if __name__ == "__main__":
    main()
