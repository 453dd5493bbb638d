# The Jupyter server's settings in the Jupyter Docker Stacks: every address of the container
# on JUPYTER_PORT (8888), no browser to open. Any `jupyter lab` or `jupyter server` started in
# the image reads them, not only start-notebook.py.
import os

c = get_config()  # noqa: F821 (the name Jupyter's config loader provides)
c.ServerApp.ip = "0.0.0.0"
c.ServerApp.port = int(os.environ.get("JUPYTER_PORT", "8888"))
c.ServerApp.open_browser = False
