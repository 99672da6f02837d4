using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Dynamo.Load.Benchmarks;

/// <summary>What a benchmark figure came from: the CPU's name and the instruction sets the kernels can use on it.</summary>
public static class MachineInfo
{
    /// <summary>The CPU's model name (/proc/cpuinfo), or "unknown".</summary>
    public static string CpuName()
    {
        try
        {
            return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown";
        }
        catch (IOException)
        {
            return "unknown";
        }
        catch (UnauthorizedAccessException)
        {
            return "unknown";
        }
    }

    /// <summary>The SIMD instruction sets this process may use, as the runtime reports them (switched off ones left out), e.g. "avx512f avx512bw avx512vnni avx2".</summary>
    public static string Isa()
    {
        var sets = new List<string>();
        void Add(bool supported, string name)
        {
            if (supported)
            {
                sets.Add(name);
            }
        }

        Add(Avx512F.IsSupported, "avx512f");
        Add(Avx512BW.IsSupported, "avx512bw");
        Add(Avx512Vbmi.IsSupported, "avx512vbmi");
        Add(Avx10v1.IsSupported, "avx10.1");
        Add(AvxVnni.IsSupported, "avxvnni");
        Add(Avx2.IsSupported, "avx2");
        Add(Fma.IsSupported, "fma");
        Add(AdvSimd.IsSupported, "advsimd");
        Add(AdvSimd.Arm64.IsSupported && Dp.IsSupported, "dotprod");
        return sets.Count == 0 ? "scalar" : string.Join(' ', sets);
    }
}
