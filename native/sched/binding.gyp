{
  "targets": [
    {
      "target_name": "sched",
      "sources": ["sched.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "conditions": [["OS!='linux'", { "type": "none", "sources!": ["sched.c"] }]]
    }
  ]
}
