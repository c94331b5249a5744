{
  "targets": [
    {
      "target_name": "fileid",
      "sources": ["fileid.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "conditions": [["OS!='linux'", { "type": "none", "sources!": ["fileid.c"] }]]
    }
  ]
}
