// Entry point of the benchmark suites. Run everything:
//   dotnet run -c Release --project Vfio.Benchmarks -- --filter '*'
// CI runs a quick in-process dry pass that checks every benchmark still runs:
//   dotnet run -c Release --project Vfio.Benchmarks -- --filter '*' --job dry --inProcess

using BenchmarkDotNet.Running;

namespace Vfio.Benchmarks;

internal static class Program
{
    private static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
