"""Getting images: HTTP(S) fetching with retries, limits and one deadline per image, URL and
address safety, the on-disk image cache, local files and the example products shipped with the
app.

May import: core's top-level modules and core.engine.images (decoding). Never labels' store,
bulk, training or cli.
"""
