"""Deciding whether and how to fine-tune: the wizard's answers become a recommendation with reasons."""
