import { openSnapshotter } from '../snapshots/snapshotter.js';
import { privilegedSkip } from './privileged.js';
import { snapshotterSuite } from './snapshotter-suite.js';

const skip = privilegedSkip();
snapshotterSuite('overlay', (root) => openSnapshotter(root, { backend: 'overlay' }), { skip });
snapshotterSuite('copy', (root) => openSnapshotter(root, { backend: 'copy' }), { skip });
