"""The verification itself: both passes, the comparison, check, manifest, matrix, ranks, inventory."""
