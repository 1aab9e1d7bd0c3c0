"""What says a result is a face swap: the watermark convert puts in every swapped face and its key (issue 30)."""
