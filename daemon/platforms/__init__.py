"""Taking posts down from Facebook, Instagram and LinkedIn: one adapter per platform, each
answering with one of the outcome classes in `outcomes`."""
