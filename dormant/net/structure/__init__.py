"""What a network is made of: a layer-by-layer summary, motifs of its width sequence, and plots."""
