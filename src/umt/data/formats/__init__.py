"""Torch-free readers of the annotation file formats, one module per format family (numpy and
the standard library only): each file is parsed here and nowhere else."""
