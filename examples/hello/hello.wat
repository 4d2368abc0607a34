;; A WASI preview1 command: writes a greeting to stdout and exits 0.
;; Build: wat2wasm hello.wat -o hello.wasm
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; The iovec at 0 points at the text at 16; fd_write stores the byte count at 8.
  (data (i32.const 0) "\10\00\00\00\1b\00\00\00")
  (data (i32.const 16) "hello from oci-tar-builder\n")
  (func $start (export "_start")
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
