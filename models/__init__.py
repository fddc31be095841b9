"""ML layer: image decoding, embedders and garment detectors. Imports nothing from service/ or indexer/."""
