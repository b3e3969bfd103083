"""Clip transforms, one module per kind: :mod:`.video` (crops, flips, resizes, erasing, colour,
normalisation), :mod:`.randaugment`, :mod:`.mixup` (batch level), :mod:`.boxes` (person boxes
under the detection transforms) and :mod:`.recipes` (one factory per recipe: pretraining,
fine-tuning, evaluation views, captions)."""
