"""One module per paper: its protocol (how it trains, selects and evaluates), on top of the
shared library.  ``p1``: local gradient alignment (Joo et al., AAAI 2023)."""
