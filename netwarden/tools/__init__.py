"""The tools: demo, local stack, scenarios, replay, report and the flow stand-in servers.

The top layer: it may use every process, and no process imports it. Not shipped in the production image.
"""
