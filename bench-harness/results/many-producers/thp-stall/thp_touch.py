import mmap, time, sys
size = 512 << 20
for huge in (True, False, True, False):
    m = mmap.mmap(-1, size + (2 << 20), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if huge: m.madvise(mmap.MADV_HUGEPAGE)
    else: m.madvise(mmap.MADV_NOHUGEPAGE)
    t = time.perf_counter()
    for off in range(0, size, 4096):
        m[off] = 1
    dt = time.perf_counter() - t
    print(f"huge={huge}: touched 512 MiB in {dt*1000:.0f} ms = {size/dt/1e9:.2f} GB/s, per 2 MiB {dt/256*1000:.2f} ms")
    m.close()
