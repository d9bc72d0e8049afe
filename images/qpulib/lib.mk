# Builds libqpu.so from a fixed-up QPULib Lib/ folder; driven by build.sh
# (make -f lib.mk -C <copy>/Lib -j N CXX=... QPULIB_CXXFLAGS=... QPULIB_LDFLAGS=...
# QPULIB_LIBS=...: libraries, linked after the objects).
# Objects sit next to their sources in the build copy, so Source/Syntax.o
# and Target/Syntax.o never collide.
SONAME ?= libqpu.so.1
SRCS := $(sort $(shell find . -name '*.cpp'))
OBJS := $(SRCS:.cpp=.o)

$(SONAME).0: $(OBJS)
	$(CXX) $(QPULIB_CXXFLAGS) $(QPULIB_LDFLAGS) -shared -Wl,-soname,$(SONAME) -o $@ $^ $(QPULIB_LIBS)

%.o: %.cpp
	$(CXX) $(QPULIB_CXXFLAGS) -I . -c $< -o $@
