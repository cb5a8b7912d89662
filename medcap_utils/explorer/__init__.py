"""The results explorer of notebook 08: ``data`` gathers a reports folder with pandas, ``render`` turns one image's
results into HTML and pictures, ``app`` is the ipywidgets front end
(``from medcap_utils.explorer.app import explore``)."""
