"""REB (DefectMaker self-supervised fine-tuning + LDKNN memory bank): see trainer.reb.family."""
