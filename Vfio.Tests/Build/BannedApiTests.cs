// The layering rule of README.md (Layout), checked on the compiled assemblies: only
// Vfio.Kernel may use raw threading, wall time or unseeded randomness. BannedApiAnalyzers
// enforces it at build time; this test reads the IL metadata, so it also catches what the
// analyzer cannot see (a `lock` statement compiles to System.Threading.Monitor calls).

using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using NUnit.Framework;

namespace Vfio.Tests.Build;

public sealed class BannedApiTests
{
    private static readonly HashSet<string> BannedTypes =
    [
        "System.Threading.Monitor",
        "System.Threading.Lock",
        "System.Threading.Thread",
        "System.Threading.ThreadPool",
        "System.Threading.Tasks.Parallel",
        "System.Threading.SemaphoreSlim",
        "System.Threading.ManualResetEventSlim",
        "System.Threading.ManualResetEvent",
        "System.Threading.AutoResetEvent",
        "System.Threading.Mutex",
        "System.Threading.ReaderWriterLockSlim",
        "System.Threading.SpinLock",
        "System.Threading.Timer",
        "System.Diagnostics.Stopwatch",
    ];

    private static readonly HashSet<string> BannedMembers =
    [
        "System.Threading.Tasks.Task::Run",
        "System.Threading.Tasks.Task::Delay",
        "System.DateTime::get_Now",
        "System.DateTime::get_UtcNow",
        "System.DateTimeOffset::get_Now",
        "System.DateTimeOffset::get_UtcNow",
        "System.Random::get_Shared",
        "System.Random::.ctor",
        "System.Environment::get_TickCount",
        "System.Environment::get_TickCount64",
        "System.TimeProvider::get_System",
    ];

    private static IEnumerable<string> Violations(string assemblyFile)
    {
        using var pe = new PEReader(File.OpenRead(Path.Combine(TestContext.CurrentContext.TestDirectory, assemblyFile)));
        MetadataReader md = pe.GetMetadataReader();
        var found = new SortedSet<string>(StringComparer.Ordinal);
        foreach (TypeReferenceHandle h in md.TypeReferences)
        {
            string name = FullName(md, h);
            if (BannedTypes.Contains(name))
            {
                found.Add(name);
            }
        }

        foreach (MemberReferenceHandle h in md.MemberReferences)
        {
            MemberReference m = md.GetMemberReference(h);
            if (m.Parent.Kind == HandleKind.TypeReference)
            {
                string member = $"{FullName(md, (TypeReferenceHandle)m.Parent)}::{md.GetString(m.Name)}";
                if (BannedMembers.Contains(member))
                {
                    found.Add(member);
                }
            }
        }

        return found;
    }

    private static string FullName(MetadataReader md, TypeReferenceHandle h)
    {
        TypeReference t = md.GetTypeReference(h);
        string ns = md.GetString(t.Namespace);
        return ns.Length == 0 ? md.GetString(t.Name) : $"{ns}.{md.GetString(t.Name)}";
    }

    [TestCase("Vfio.Platform.dll")]
    [TestCase("Vfio.Core.dll")]
    [TestCase("Vfio.Iommu.Type1.dll")]
    [TestCase("Vfio.Pci.dll")]
    [TestCase("Vfio.Mdev.dll")]
    [TestCase("vfio-sim.dll")]
    public void SimulatedKernelCode_GoesThroughTheKernelRuntime(string assembly)
        => Assert.That(Violations(assembly), Is.Empty, $"{assembly} uses raw threading, wall time or unseeded randomness");

    [Test]
    public void TheScanner_SeesRawThreadingWhereItIsAllowed()
        => Assert.That(Violations("Vfio.Kernel.dll"), Does.Contain("System.Threading.Monitor").And.Contain("System.Threading.Thread").And.Contain("System.Diagnostics.Stopwatch"));
}
