#!/bin/sh
echo "Hello from an image built by @NAME@"
