"""Verification of samples: answer extraction and equivalence against the ground truth."""
