// QPU mode's host side against a fake VideoCore: this program defines ioctl, open, mmap,
// munmap and close, which take the place of libc's for libqpu.so (ELF symbol interposition),
// so QPULib's mailbox and GPU-memory code runs on any host. argv[1] picks what the fake
// firmware does; the program prints what QPULib did (test_hardware_fixes.py checks it):
//   ok              every call succeeds: allocate, map, free a 16-int SharedArray
//   status-error    the firmware answers mem_alloc with status 0x80000001
//   tag-unanswered  the firmware leaves mem_alloc's tag without its response bit
//   lock-fails      mem_lock answers bus address 0
//   mmap-fails      mapping /dev/mem fails
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <exception>
#include "QPULib.h"

static const char* scenario = "ok";
static const int FAKE_VCIO = 1000, FAKE_MEM = 1001;
static int allocs, locks, unlocks, frees;
static size_t mapped, unmapped;

extern "C" int ioctl(int fd, unsigned long request, ...) {
  va_list ap;
  va_start(ap, request);
  unsigned* p = va_arg(ap, unsigned*);
  va_end(ap);
  if (fd != FAKE_VCIO) return -1;
  unsigned tag = p[2];
  p[1] = 0x80000000u;  // success
  p[4] |= 0x80000000u; // tag answered
  switch (tag) {
    case 0x3000c:  // allocate
      allocs++;
      if (!strcmp(scenario, "status-error")) p[1] = 0x80000001u;
      if (!strcmp(scenario, "tag-unanswered")) p[4] &= ~0x80000000u;
      p[5] = 7;  // handle
      break;
    case 0x3000d:  // lock
      locks++;
      p[5] = !strcmp(scenario, "lock-fails") ? 0 : 0xC0001000u;
      break;
    case 0x3000e: unlocks++; p[5] = 0; break;
    case 0x3000f: frees++; p[5] = 0; break;
    default: p[5] = 0; break;
  }
  return 0;
}

extern "C" int open(const char* path, int flags, ...) {
  if (!strcmp(path, "/dev/vcio")) return FAKE_VCIO;
  if (!strcmp(path, "/dev/mem")) return FAKE_MEM;
  return (int) syscall(SYS_openat, AT_FDCWD, path, flags, 0);
}

extern "C" int close(int fd) {
  if (fd == FAKE_VCIO || fd == FAKE_MEM) return 0;
  return (int) syscall(SYS_close, fd);
}

extern "C" void* mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset) {
  if (fd != FAKE_MEM || !strcmp(scenario, "mmap-fails")) return MAP_FAILED;
  mapped = length;
  void* mem = NULL;
  if (posix_memalign(&mem, 4096, length)) return MAP_FAILED;
  return mem;
}

extern "C" int munmap(void* addr, size_t length) {
  unmapped = length;
  free(addr);
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1) scenario = argv[1];
  try {
    SharedArray<int> a(16);
    for (int i = 0; i < 16; i++) a[i] = i;
    printf("allocated %u\n", a.getAddress());
  } catch (const std::exception& e) {
    printf("caught: %s\n", e.what());
  }
  printf("allocs %d locks %d unlocks %d frees %d mapped %zu unmapped %zu\n", allocs, locks, unlocks, frees,
         mapped, unmapped);
  return 0;
}
