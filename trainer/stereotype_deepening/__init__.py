"""Stereotype Deepening (Zhou, Zheng, Yong): doctor -> masters -> bachelors, scored by three biases."""
