"""Test helpers that are importable by notebooks' smoke runs too (no pytest dependency).

- :mod:`medcap_utils.testing.local_hub`: a Hugging Face cache of tiny stand-in models under the real hub
  ids of the rocov2 profile, so the real loading code runs offline.
"""
