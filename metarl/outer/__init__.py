"""Outer loops: evolution strategies (evosax) and second-order meta-gradients."""
