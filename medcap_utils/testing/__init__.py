"""Test helpers that are importable by notebooks' smoke runs too (no pytest dependency).

- :mod:`medcap_utils.testing.local_hub`: a Hugging Face cache of tiny stand-in models under the real hub
  ids of the rocov2 profile, so the real loading code runs offline.
- :mod:`medcap_utils.testing.explorer_fixture`: a tiny reports + data folder in the real formats for the
  results explorer; :mod:`medcap_utils.testing.browser`: the explorer in JupyterLab + headless Chromium.
"""
