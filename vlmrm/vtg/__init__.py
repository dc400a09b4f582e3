"""Video temporal grounding (VTG): find the segment of a video that a sentence describes."""
