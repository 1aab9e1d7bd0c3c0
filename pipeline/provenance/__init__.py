"""What says a result is a face swap: the invisible watermark convert puts in every swapped face (issue 30)."""
