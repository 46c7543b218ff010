"""`vision-lm`: the vision track's command line.

    vision-lm make-shapes --out DIR          generate the synthetic shapes data set
    vision-lm fit|validate|test -c CONFIG    LightningCLI training / evaluation
    vision-lm zero-shot --checkpoint PATH --image FILE --labels "a,b,c"
    vision-lm caption --checkpoint PATH --image FILE [--prompt TEXT]
    vision-lm export-hf --checkpoint PATH --out DIR

The training commands take the system from the YAML (`model: class_path: ...`), so one
command trains SigLIP and the captioner with the same data module. Dispatch, help and the
lazy imports are `shared/train/dispatch.py`'s.
"""

from __future__ import annotations

from shared.train.dispatch import dispatch

USAGE = __doc__.split("\n\n")[1]
COMMANDS = {
    "make-shapes": "vision_lm.make_shapes_cli:main",
    "zero-shot": "vision_lm.zero_shot_cli:main",
    "caption": "vision_lm.caption_cli:main",
    "export-hf": "vision_lm.export_cli:main",
}


def main(argv: list[str] | None = None) -> None:
    dispatch(
        "vision-lm",
        USAGE,
        COMMANDS,
        system="shared.train.system:System",
        datamodule="vision_lm.data:ImageTextDataModule",
        argv=argv,
        subclass_mode_model=True,
    )


if __name__ == "__main__":
    main()
