#!/usr/bin/env python3
"""Starts the Jupyter server as the Jupyter Docker Stacks' start-notebook.py does: JupyterLab,
or the Jupyter command DOCKER_STACKS_JUPYTER_CMD names (notebook, nbclassic, server), with the
arguments NOTEBOOK_ARGS holds and then this script's own. Address, port and browser come from
/etc/jupyter/jupyter_server_config.py."""

import os
import shlex
import sys

command = ["jupyter", os.environ.get("DOCKER_STACKS_JUPYTER_CMD", "lab")]
command += shlex.split(os.environ.get("NOTEBOOK_ARGS", ""))
command += sys.argv[1:]
sys.stdout.flush()
os.execvp(command[0], command)
