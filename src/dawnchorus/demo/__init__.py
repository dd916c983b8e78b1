"""The demo data set: synthetic species, weakly labelled recordings and soundscapes in the BirdCLEF
2025 layout."""
