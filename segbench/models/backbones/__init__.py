"""Backbones shared by several families (one file each); a family file picks one and adds its heads."""
