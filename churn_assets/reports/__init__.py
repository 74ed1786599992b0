"""What people look at: the daily retention brief, one self-contained HTML page per scored day.

``inputs.py`` reads what a page needs (tables through the store, model history from MLflow);
``brief.py`` turns those frames into the page's figures (pure Polars); ``svg.py`` draws charts as
inline SVG and ``page.py`` lays them out; ``browser.py`` drives headless Chromium to check a page
renders and to take screenshots.
"""
