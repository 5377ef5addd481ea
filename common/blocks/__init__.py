"""Network blocks shared by the methods (torch and numpy only): transformer, pooling heads, pair features, vector
quantisation, k-means."""
