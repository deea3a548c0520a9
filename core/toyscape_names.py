"""The toyscape classes and seed ranges, without torch: the command line's parser names them, and
``synesthesia --help`` should not pay for importing torch (see :mod:`core.toyscape` for the clips)."""

CLASSES = ("thunderstorm", "waterfall", "volcano eruption", "squishing water", "wind",
           "fire crackling", "raining", "underwater bubbling", "splashing water")
TRAIN_SEEDS = range(0, 10000)
HELD_OUT_SEED_BASE = 100000  # held-out clips use seeds >= this
VALIDATION_SEED_BASE = 50000  # validation clips (for choosing settings, never for the figures) from this up
EVAL_SPLITS = {"held-out": HELD_OUT_SEED_BASE, "validation": VALIDATION_SEED_BASE}
