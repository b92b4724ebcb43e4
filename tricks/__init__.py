"""One small module per trick of He et al., "Bag of Tricks for Image Classification with CNNs" (CVPR 2019); see README.md."""
