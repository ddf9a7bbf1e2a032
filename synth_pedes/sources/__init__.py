"""Sources: turn external data (image folders, benchmark JSONs, SYNTH-PEDES releases, Market-1501)
into datasets, and our caption datasets back into the released SYNTH-PEDES layout."""
from .benchmarks import FORMATS, BadEntriesError, EntryItem, EntrySource, ScanResult, scan_benchmark
from .images import ImageFolderSource, ImageItem, check_image_bytes, load_image_record, read_image_file, scan_image_folder
from .market1501 import scan_market1501
from .synth_pedes_json import export_synth_pedes_json, parse_attributes, scan_synth_pedes_json

__all__ = ["FORMATS", "BadEntriesError", "EntryItem", "EntrySource", "ScanResult", "scan_benchmark",
           "ImageFolderSource", "ImageItem", "check_image_bytes", "load_image_record", "read_image_file",
           "scan_image_folder", "scan_market1501", "export_synth_pedes_json", "parse_attributes",
           "scan_synth_pedes_json"]
