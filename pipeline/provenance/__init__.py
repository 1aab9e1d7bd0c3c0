"""What says a result is a face swap (issue 30): the watermark convert puts in every swapped face and its key, the
C2PA content credentials signed into the video and who signs them, and the consent records they state."""
