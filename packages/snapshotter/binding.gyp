{
  "targets": [
    {
      "target_name": "tsbuild_sys",
      "sources": ["native/tsbuild_sys.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
