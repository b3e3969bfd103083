"""Torch-free readers of the annotation file formats (numpy and the standard library only):
each file is parsed here and nowhere else.

* :mod:`.records`: :class:`~umt.data.formats.records.VideoRecord` (what the list readers yield),
  media extensions, JSON lists.
* :mod:`.kinetics`: Kinetics-style video lists (``path label``, CSV, TSN frame folders).
* :mod:`.json_lists`: Something-Something-v2 JSON and its label map; the video-text /
  image-text caption JSON of stage 2.
* :mod:`.annotations`: ``detect_format`` / ``load_annotations``, dispatching to the above.
* :mod:`.retrieval`: the retrieval test sets (MSRVTT, DiDeMo, MSVD, ActivityNet, LSMDC, SSv2).
* :mod:`.qa`: open-ended QA (official JSON, MSRVTT-QA, MSVD-QA, ActivityNet-QA), answer lists,
  multiple choice.
* :mod:`.labels`: the class-name lists (Kinetics, SSv2, MiT; shipped and a user's own).
* :mod:`.ava`: AVA (box CSV, pbtxt label map, excluded keyframes, person boxes) and
  AlphAction's JSON layouts.
"""
