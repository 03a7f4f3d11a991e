"""Uninformed Students (Bergmann et al., CVPR 2020): patch teacher and student ensembles (family "uninformed_students")."""
