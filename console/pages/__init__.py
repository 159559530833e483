"""Console pages, one module each; :func:`console.app.build` registers them."""
