"""Sources: turn external data (image folders, benchmark JSONs, SYNTH-PEDES releases) into datasets."""
from .images import ImageFolderSource, ImageItem, load_image_record, scan_image_folder

__all__ = ["ImageFolderSource", "ImageItem", "load_image_record", "scan_image_folder"]
