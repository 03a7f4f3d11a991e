"""MKD: Multiresolution Knowledge Distillation (Salehi et al., CVPR 2021); see trainer.mkd.family."""
