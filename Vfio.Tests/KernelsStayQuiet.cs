// After every test, every simulated kernel the test created must have stayed quiet: no
// WARN, BUG, lockdep, refcount or sleep-in-atomic report that the test did not declare with
// SimKernel.ExpectWarning. It covers every kernel, whoever made it (a rig, the host, a
// bare Runs.Kernel, a machine description).
//
// How kernels are attributed: BeforeTest puts a fresh list in an AsyncLocal; SimKernel's
// constructor calls SimKernel.Created, which adds the kernel to the list of the execution
// context it runs in. An AsyncLocal flows into the threads, tasks and thread-pool work a
// test starts, so a kernel made on a helper thread counts for the test too, and nothing
// ever asks NUnit's TestContext from a kernel's own task threads. AfterTest takes the list
// out of the context (so a seed loop's kernels go with the test) and fails the test with
// every unexpected report.
//
// A test that leaves an unexpected warning on purpose (a test of WARN or lockdep itself)
// says so with [LeavesKernelWarnings] and a comment why.

using System.Collections.Concurrent;
using NUnit.Framework;
using NUnit.Framework.Interfaces;
using Vfio.Kernel;
using Vfio.Tests;

[assembly: KernelsStayQuiet]

namespace Vfio.Tests;

/// <summary>Fails a test when a kernel it created reported a warning it did not expect.</summary>
[AttributeUsage(AttributeTargets.Assembly)]
internal sealed class KernelsStayQuietAttribute : Attribute, ITestAction
{
    // The kernels created so far in the running test's execution context; null outside a test.
    private static readonly AsyncLocal<ConcurrentQueue<SimKernel>?> s_kernels = new();

    // Installed when NUnit first reads the assembly's attributes, before any test runs.
    static KernelsStayQuietAttribute() => SimKernel.Created = static k => s_kernels.Value?.Enqueue(k);

    public ActionTargets Targets => ActionTargets.Test;

    /// <summary>The kernels the current test (or the scope a <see cref="BeforeTest"/> opened) has created so far.</summary>
    internal static IReadOnlyCollection<SimKernel> KernelsOfThisTest => s_kernels.Value?.ToArray() ?? [];

    public void BeforeTest(ITest test) => s_kernels.Value = new ConcurrentQueue<SimKernel>();

    public void AfterTest(ITest test)
    {
        ConcurrentQueue<SimKernel>? kernels = s_kernels.Value;
        s_kernels.Value = null;
        if (kernels is null || LeavesWarnings(test))
        {
            return;
        }

        // Thrown rather than Assert.Fail: NUnit records an exception from AfterTest as the
        // test's failure, and a direct call (the action's own tests) does not touch the
        // calling test's result.
        if (Report(kernels) is { } report)
        {
            throw new AssertionException(report);
        }
    }

    /// <summary>What the check reports for <paramref name="kernels"/>: null when none reported an unexpected warning.</summary>
    internal static string? Report(IEnumerable<SimKernel> kernels)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var lines = new List<string>();
        int index = 0;
        foreach (SimKernel k in kernels)
        {
            index++;
            IReadOnlyList<KernelWarning> unexpected = k.UnexpectedWarnings;
            if (unexpected.Count == 0)
            {
                continue;
            }

            lines.Add($"kernel #{index} of this test ({k.Mode}, seed {k.Seed}, {k.Profile.Name}) reported {unexpected.Count} warning(s) the test did not declare with ExpectWarning:");
            foreach (KernelWarning w in unexpected)
            {
                lines.Add($"[{w.Kind}, task {w.Task}] {w.Text}");
            }
        }

        return lines.Count == 0
            ? null
            : string.Join('\n', lines) + "\nDeclare a warning the test provokes with kernel.ExpectWarning(...), or mark a test of the warning machinery itself [LeavesKernelWarnings].";
    }

    private static bool LeavesWarnings(ITest test)
        => test.Method?.MethodInfo.IsDefined(typeof(LeavesKernelWarningsAttribute), inherit: true) == true
           || test.TypeInfo?.Type.IsDefined(typeof(LeavesKernelWarningsAttribute), inherit: true) == true;
}

/// <summary>
/// Exempts a test (or every test of a fixture) from <see cref="KernelsStayQuietAttribute"/>:
/// for tests that leave an unexpected kernel warning on purpose. Say why in a comment.
/// </summary>
[AttributeUsage(AttributeTargets.Method | AttributeTargets.Class, Inherited = true)]
internal sealed class LeavesKernelWarningsAttribute : Attribute
{
}
